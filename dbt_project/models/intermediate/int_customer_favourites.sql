-- Favourite category and brand (largest line amount) and store (most orders), over completed orders.
with lines as (
    select * from {{ ref('int_order_lines_enriched') }}
    where status = 'completed' and {{ in_scope('customer_id') }}
),

{% for dim in ['category', 'brand'] %}
by_{{ dim }} as (
    select customer_id, {{ dim }} as value, sum(line_amount) as weight
    from lines
    where {{ dim }} is not null
    group by customer_id, {{ dim }}
),

top_{{ dim }} as (
    select customer_id, value
    from (
        select
            customer_id,
            value,
            -- ties go to the alphabetically first value
            row_number() over (partition by customer_id order by weight desc, value asc) as place
        from by_{{ dim }}
    ) as ranked
    where place = 1
),
{% endfor %}

by_store as (
    select customer_id, store_id as value, count(*) as weight
    from {{ ref('int_orders_cut') }}
    where status = 'completed' and store_id is not null and {{ in_scope('customer_id') }}
    group by customer_id, store_id
),

top_store as (
    select customer_id, value
    from (
        select customer_id, value,
            row_number() over (partition by customer_id order by weight desc, value asc) as place
        from by_store
    ) as ranked
    where place = 1
),

customers as (
    select customer_id from top_category
    union
    select customer_id from top_brand
    union
    select customer_id from top_store
)

select
    customers.customer_id,
    top_category.value as favourite_category,
    top_brand.value as favourite_brand,
    top_store.value as favourite_store
from customers
left join top_category on top_category.customer_id = customers.customer_id
left join top_brand on top_brand.customer_id = customers.customer_id
left join top_store on top_store.customer_id = customers.customer_id
