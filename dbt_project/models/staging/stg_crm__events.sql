select customer_id, occurred_at, event_type, channel, properties
from {{ source('raw', 'events') }}
