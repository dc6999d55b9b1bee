-- Customers that exist as of the as-of day: a later registration does not exist yet.
select *
from {{ ref('stg_crm__customers') }}
where registered_at is null or registered_at < {{ cutoff() }}
