-- Every completed order in the loaded rows that a message took, by send and by click (docs/analytics.md,
-- "Attribution"): a message takes an order of its customer placed after its send (or click) time and no later
-- than that time plus its campaign's attribution window; of several, the latest (last touch), so an order
-- counts once. A touch comes before its order, so an order's attribution is the same as of any day from the
-- order's own on: this table holds every day's, and order_attribution cuts it at the as-of day.
-- Incremental by customer (this folder's settings in dbt_project.yml, macros/analytics_increments.sql): raw
-- rows are only appended, so a customer's attributions can only be replaced, never dropped, by their new rows.
with messages as (
    select
        message_id, customer_id, campaign_id, channel, sent_at, clicked_at,
        {{ attribution_hours('campaign_id') }} as window_hours
    from {{ ref('stg_crm__messages') }}
    where {{ analytics_scope('customer_id') }}
),

orders as (
    select order_id, customer_id, ordered_at, total_amount
    from {{ ref('stg_crm__orders') }}
    where status = 'completed' and {{ analytics_scope('customer_id') }}
),

{% for touch, at in [('send', 'sent_at'), ('click', 'clicked_at')] %}
{{ touch }}_touches as (
    select
        o.order_id, m.message_id, m.campaign_id, m.channel,
        row_number() over (
            partition by o.order_id order by m.{{ at }} desc, m.message_id desc nulls last
        ) as latest
    from orders as o
    inner join messages as m
        on m.customer_id = o.customer_id
        and m.sent_at < o.ordered_at  -- a message sent after the order took it in neither way
        and m.{{ at }} < o.ordered_at
        and o.ordered_at <= {{ dbt.dateadd('hour', 'm.window_hours', 'm.' ~ at) }}
),
{% endfor %}

attributed as (
    select
        o.order_id, o.customer_id, o.ordered_at, o.total_amount,
        s.message_id as send_message_id, s.campaign_id as send_campaign_id, s.channel as send_channel,
        c.message_id as click_message_id, c.campaign_id as click_campaign_id, c.channel as click_channel
    from orders as o
    left join send_touches as s on s.order_id = o.order_id and s.latest = 1
    left join click_touches as c on c.order_id = o.order_id and c.latest = 1
)

select *
from attributed
where send_channel is not null or click_channel is not null
