select customer_id, occurred_at, event_type, channel, properties
from {{ ref('stg_crm__events') }}
where occurred_at < {{ cutoff() }}
