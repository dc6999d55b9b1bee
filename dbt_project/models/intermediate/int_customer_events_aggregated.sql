-- Site and app activity as of the as-of day; a visit is a site_visit or an app_open.
select
    customer_id,
    max(case when event_type in ('site_visit', 'app_open') then occurred_at end) as last_visit_at,
    sum(case when event_type in ('site_visit', 'app_open') then {{ in_window('occurred_at', 30) }} else 0 end)
        as visits_30d,
    sum(case when event_type = 'product_view' then {{ in_window('occurred_at', 30) }} else 0 end)
        as product_views_30d,
    sum(case when event_type = 'cart_add' then {{ in_window('occurred_at', 30) }} else 0 end) as cart_adds_30d,
    max(occurred_at) as last_event_at
from {{ ref('stg_crm__events') }}
where occurred_at < {{ cutoff() }} and {{ in_scope('customer_id') }}
group by customer_id
