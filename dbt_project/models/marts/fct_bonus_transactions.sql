select customer_id, occurred_at, points, reason
from {{ ref('stg_crm__bonus_transactions') }}
where occurred_at < {{ cutoff() }}
