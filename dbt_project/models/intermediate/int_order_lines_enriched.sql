-- Lines of the orders placed by the as-of day, with the order's customer, time, status, store, channel and product.
select
    lines.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.status,
    orders.store_id,
    orders.channel,
    lines.product_id,
    products.product_name,
    products.category,
    products.brand,
    lines.quantity,
    lines.price,
    lines.line_amount
from {{ ref('stg_crm__order_lines') }} as lines
inner join {{ ref('int_orders_cut') }} as orders on orders.order_id = lines.order_id
left join {{ ref('stg_crm__products') }} as products on products.product_id = lines.product_id
