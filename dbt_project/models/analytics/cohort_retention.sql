-- First-order month × months since: of the customers whose first completed order fell in a month, how many
-- ordered again (completed) in each later calendar month, up to the as-of day (docs/analytics.md, "Cohorts").
-- The latest as-of date only: the whole table is recomputed each night, from customer_order_months.
with months as (
    select customer_id, order_month
    from {{ ref('customer_order_months') }}
    where first_ordered_at < {{ cutoff() }}
),

cohorts as (
    select customer_id, min(order_month) as cohort_month
    from months
    group by customer_id
),

sizes as (
    select cohort_month, count(*) as customers
    from cohorts
    group by cohort_month
),

calendar as (
    select distinct order_month from months
),

active as (
    select c.cohort_month, m.order_month, count(*) as active_customers
    from months as m
    inner join cohorts as c on c.customer_id = m.customer_id
    group by c.cohort_month, m.order_month
)

select
    {{ as_of() }} as as_of,
    cast(s.cohort_month as date) as cohort_month,
    {{ dbt.datediff('s.cohort_month', 'm.order_month', 'month') }} as months_since,
    s.customers,
    coalesce(a.active_customers, 0) as active_customers,
    coalesce(a.active_customers, 0) / s.customers as share
from sizes as s
inner join calendar as m on m.order_month >= s.cohort_month
left join active as a on a.cohort_month = s.cohort_month and a.order_month = m.order_month
