-- One row per customer and calendar month with a completed order: when the month's first one was placed
-- (docs/analytics.md, "Cohorts"). cohort_retention reads the rows placed by the end of the as-of day. It holds
-- every day's, and is incremental by customer like order_touches (macros/analytics_increments.sql).
select
    customer_id,
    {{ dbt.date_trunc('month', 'ordered_at') }} as order_month,
    min(ordered_at) as first_ordered_at
from {{ ref('stg_crm__orders') }}
where status = 'completed' and {{ analytics_scope('customer_id') }}
group by customer_id, {{ dbt.date_trunc('month', 'ordered_at') }}
