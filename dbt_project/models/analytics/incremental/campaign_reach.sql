-- One row per campaign, channel and customer sent a message of it: when each step of the funnel was first
-- reached (docs/analytics.md, "Campaign funnel"). A step counts as of a day when a message was sent and had
-- that step's time by the end of that day, so its time here is the later of the two; campaign_funnel counts
-- the customers whose times fall before the as-of day's end. It holds every day's, and is incremental by
-- customer like order_touches (macros/analytics_increments.sql).
select
    campaign_id, channel, customer_id,
    min(sent_at) as sent_at,
    {% for step in ['delivered', 'opened', 'clicked', 'complained', 'unsubscribed'] %}
    min(case when {{ step }}_at is not null then greatest(sent_at, {{ step }}_at) end) as {{ step }}_at{{ "," if not loop.last }}
    {% endfor %}
from {{ ref('stg_crm__messages') }}
where campaign_id is not null and {{ analytics_scope('customer_id') }}
group by campaign_id, channel, customer_id
