-- Messages sent by the end of the as-of day; engagement timestamps after it are hidden (point in time).
{% set cut = cutoff() %}
select
    message_id, customer_id, campaign_id, channel, sent_at,
    {% for col in ['delivered_at', 'opened_at', 'clicked_at', 'complained_at', 'unsubscribed_at'] %}
    case when {{ col }} < {{ cut }} then {{ col }} end as {{ col }}{{ "," if not loop.last }}
    {% endfor %}
from {{ ref('stg_crm__messages') }}
where sent_at < {{ cut }}
