-- One row per campaign, channel and as-of date: the customers reached at each step of the funnel, the orders
-- the campaign's messages took (order_attribution) and the rates (docs/analytics.md, "Campaign funnel").
-- Each partition replaces its own date's rows, so a backfill leaves every day's funnel. The customers reached
-- come from campaign_reach, which holds every day's.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='as_of') }}

{% set cut = cutoff() %}
with reach as (
    select
        campaign_id, channel,
        count(case when sent_at < {{ cut }} then 1 end) as sent,
        {% for step in ['delivered', 'opened', 'clicked', 'complained', 'unsubscribed'] %}
        count(case when {{ step }}_at < {{ cut }} then 1 end) as {{ step }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ ref('campaign_reach') }}
    group by campaign_id, channel
    having count(case when sent_at < {{ cut }} then 1 end) > 0
),

{% for touch in ['send', 'click'] %}
after_{{ touch }} as (
    select
        {{ touch }}_campaign_id as campaign_id, {{ touch }}_channel as channel,
        count(*) as orders, sum(total_amount) as revenue, count(distinct customer_id) as buyers
    from {{ ref('order_attribution') }}
    where {{ touch }}_campaign_id is not null
    group by 1, 2
){{ "," if not loop.last }}
{% endfor %}

select
    {{ as_of() }} as as_of,
    r.campaign_id, r.channel,
    r.sent, r.delivered, r.opened, r.clicked, r.complained, r.unsubscribed,
    coalesce(s.orders, 0) as orders_after_send,
    coalesce(s.revenue, 0) as revenue_after_send,
    coalesce(c.orders, 0) as orders_after_click,
    coalesce(c.revenue, 0) as revenue_after_click,
    r.opened / nullif(r.delivered, 0) as open_rate,
    r.clicked / nullif(r.delivered, 0) as click_rate,
    coalesce(c.buyers, 0) / nullif(r.clicked, 0) as conversion_after_click
from reach as r
left join after_send as s on s.campaign_id = r.campaign_id and s.channel = r.channel
left join after_click as c on c.campaign_id = r.campaign_id and c.channel = r.channel
