-- Orders placed before the end of the as-of day.
select *
from {{ ref('stg_crm__orders') }}
where ordered_at < {{ cutoff() }}
