-- First-order month × months since: of the customers whose first completed order fell in a month, how many
-- ordered again (completed) in each later calendar month, up to the as-of day (docs/analytics.md, "Cohorts").
-- The latest as-of date only: the whole table is recomputed each night.
with orders as (
    select customer_id, {{ dbt.date_trunc('month', 'ordered_at') }} as order_month
    from {{ ref('fct_orders') }}
    where status = 'completed'
),

cohorts as (
    select customer_id, min(order_month) as cohort_month
    from orders
    group by customer_id
),

sizes as (
    select cohort_month, count(*) as customers
    from cohorts
    group by cohort_month
),

months as (
    select distinct order_month from orders
),

active as (
    select c.cohort_month, o.order_month, count(distinct o.customer_id) as active_customers
    from orders as o
    inner join cohorts as c on c.customer_id = o.customer_id
    group by c.cohort_month, o.order_month
)

select
    {{ as_of() }} as as_of,
    cast(s.cohort_month as date) as cohort_month,
    {{ dbt.datediff('s.cohort_month', 'm.order_month', 'month') }} as months_since,
    s.customers,
    coalesce(a.active_customers, 0) as active_customers,
    coalesce(a.active_customers, 0) / s.customers as share
from sizes as s
inner join months as m on m.order_month >= s.cohort_month
left join active as a on a.cohort_month = s.cohort_month and a.order_month = m.order_month
