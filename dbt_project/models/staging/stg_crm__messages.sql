select
    message_id, customer_id, campaign_id, channel, sent_at,
    delivered_at, opened_at, clicked_at, complained_at, unsubscribed_at
from {{ source('raw', 'messages') }}
