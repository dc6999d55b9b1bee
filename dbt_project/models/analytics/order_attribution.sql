-- Completed orders placed by the end of the as-of day that a message took (docs/analytics.md,
-- "Attribution"): order_touches, which holds every day's, cut at the as-of day.
{{ config(materialized='view') }}

select {{ as_of() }} as as_of, *
from {{ ref('order_touches') }}
where ordered_at < {{ cutoff() }}
