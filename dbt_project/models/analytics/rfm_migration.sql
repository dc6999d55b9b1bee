-- How customers moved between RFM segments from one built day to the as-of day: `rfm_migration_months`
-- (default 1) calendar months earlier, read from the features' history (the latest built day on or before it).
-- Customers who existed on both days only (docs/analytics.md, "RFM migration").
{% set months = var('rfm_migration_months', 1) | int %}
{% set from_day = 'cast(' ~ dbt.dateadd('month', -months, as_of()) ~ ' as date)' %}
with history as (
    select customer_id, rfm_segment, valid_from, valid_to
    from {{ ref('customer_features_history') }}
),

on_from as (
    select customer_id, rfm_segment from history
    where valid_from <= {{ from_day }} and (valid_to is null or valid_to > {{ from_day }})
),

on_as_of as (
    select customer_id, rfm_segment from history
    where valid_from <= {{ as_of() }} and (valid_to is null or valid_to > {{ as_of() }})
)

select
    {{ as_of() }} as as_of,
    {{ from_day }} as from_day,
    f.rfm_segment as from_segment,
    t.rfm_segment as to_segment,
    count(*) as customers
from on_from as f
inner join on_as_of as t on t.customer_id = f.customer_id
group by f.rfm_segment, t.rfm_segment
