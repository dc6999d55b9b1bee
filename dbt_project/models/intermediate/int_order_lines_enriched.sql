-- Lines of the orders placed by the as-of day, with the order's customer, time, status, store, channel and product.
select
    order_id, customer_id, ordered_at, status, store_id, channel,
    product_id, product_name, category, brand, quantity, price, line_amount
from {{ ref('int_order_lines_all') }}
where ordered_at < {{ cutoff() }}
