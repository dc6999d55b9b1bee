-- Order statistics per customer as of the as-of day.
with orders as (
    select * from {{ ref('int_orders_cut') }} where {{ in_scope('customer_id') }}
),

completed as (
    select
        customer_id,
        count(*) as orders_count,
        sum(total_amount) as total_amount,
        min(ordered_at) as first_ordered_at,
        max(ordered_at) as last_ordered_at,
        sum({{ in_window('ordered_at', 30) }}) as orders_30d,
        sum(total_amount * {{ in_window('ordered_at', 30) }}) as amount_30d,
        sum({{ in_window('ordered_at', 365) }}) as orders_365d,
        sum(total_amount * {{ in_window('ordered_at', 365) }}) as amount_365d
    from orders
    where status = 'completed'
    group by customer_id
),

other_statuses as (
    select
        customer_id,
        sum(case when status = 'cancelled' then 1 else 0 end) as cancelled_count,
        sum(case when status = 'returned' then 1 else 0 end) as returned_count
    from orders
    group by customer_id
)

select
    coalesce(completed.customer_id, other_statuses.customer_id) as customer_id,
    coalesce(completed.orders_count, 0) as orders_count,
    coalesce(completed.total_amount, 0) as total_amount,
    cast(completed.first_ordered_at as date) as first_order_date,
    cast(completed.last_ordered_at as date) as last_order_date,
    coalesce(completed.orders_30d, 0) as orders_30d,
    coalesce(completed.amount_30d, 0) as amount_30d,
    coalesce(completed.orders_365d, 0) as orders_365d,
    coalesce(completed.amount_365d, 0) as amount_365d,
    coalesce(other_statuses.cancelled_count, 0) as cancelled_count,
    coalesce(other_statuses.returned_count, 0) as returned_count
from completed
full outer join other_statuses on other_statuses.customer_id = completed.customer_id
