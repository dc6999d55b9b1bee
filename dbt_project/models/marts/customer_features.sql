-- One row per customer as of the as-of day: the feature catalogue (docs/features.md).
with customers as (
    select * from {{ ref('int_customers_registered') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

rfm as (
    select * from {{ ref('int_customer_rfm_scored') }}
),

favourites as (
    select * from {{ ref('int_customer_favourites') }}
),

bonus as (
    select * from {{ ref('int_customer_bonus_aggregated') }}
),

messages as (
    select * from {{ ref('int_customer_messages_aggregated') }}
),

events as (
    select * from {{ ref('int_customer_events_aggregated') }}
)

select
    customers.customer_id,
    {{ as_of() }} as as_of,
    customers.first_name,
    customers.last_name,
    customers.gender,
    customers.birth_date,
    {{ age_on('customers.birth_date', as_of()) }} as age,
    customers.email,
    customers.phone_e164 as phone,
    customers.phone_region,
    customers.phone_timezone as timezone,
    customers.city,
    customers.region,
    customers.country,
    customers.registered_at,
    {{ tenure_days_on('customers.registered_at', as_of()) }} as tenure_days,
    customers.tags,
    customers.consent_email,
    customers.consent_sms,
    customers.consent_push,
    cast(coalesce(orders.orders_count, 0) as integer) as orders_count,
    cast(coalesce(orders.total_amount, 0) as decimal(18, 2)) as total_amount,
    cast(orders.total_amount / nullif(orders.orders_count, 0) as decimal(18, 2)) as avg_order_value,
    orders.first_order_date,
    orders.last_order_date,
    {{ recency_days_on('orders.last_order_date', as_of()) }} as recency_days,
    cast(coalesce(orders.cancelled_count, 0) as integer) as cancelled_count,
    cast(coalesce(orders.returned_count, 0) as integer) as returned_count,
    cast(coalesce(orders.orders_30d, 0) as integer) as orders_30d,
    cast(coalesce(orders.amount_30d, 0) as decimal(18, 2)) as amount_30d,
    cast(coalesce(orders.orders_365d, 0) as integer) as orders_365d,
    cast(coalesce(orders.amount_365d, 0) as decimal(18, 2)) as amount_365d,
    favourites.favourite_category,
    favourites.favourite_brand,
    favourites.favourite_store,
    rfm.rfm_r,
    rfm.rfm_f,
    rfm.rfm_m,
    rfm.rfm_score,
    coalesce(rfm.rfm_segment, 'no_purchases') as rfm_segment,
    cast(coalesce(bonus.bonus_balance, 0) as decimal(18, 2)) as bonus_balance,
    cast(coalesce(bonus.bonus_earned_365d, 0) as decimal(18, 2)) as bonus_earned_365d,
    {% for col in ['emails_sent_30d', 'emails_opened_30d', 'emails_clicked_30d', 'emails_sent_90d',
                   'emails_opened_90d', 'emails_clicked_90d', 'messages_sent_30d'] %}
    cast(coalesce(messages.{{ col }}, 0) as integer) as {{ col }},
    {% endfor %}
    messages.last_email_open_at,
    messages.last_email_click_at,
    {% for col in ['unsubscribed_email', 'unsubscribed_sms', 'unsubscribed_push', 'unsubscribed', 'complained'] %}
    coalesce(messages.{{ col }}, false) as {{ col }},
    {% endfor %}
    events.last_visit_at,
    cast(coalesce(events.visits_30d, 0) as integer) as visits_30d,
    cast(coalesce(events.product_views_30d, 0) as integer) as product_views_30d,
    cast(coalesce(events.cart_adds_30d, 0) as integer) as cart_adds_30d,
    events.last_event_at
    {{ custom_columns(ref('stg_crm__customers'), 'customers') }}
from customers
left join orders on orders.customer_id = customers.customer_id
left join rfm on rfm.customer_id = customers.customer_id
left join favourites on favourites.customer_id = customers.customer_id
left join bonus on bonus.customer_id = customers.customer_id
left join messages on messages.customer_id = customers.customer_id
left join events on events.customer_id = customers.customer_id
