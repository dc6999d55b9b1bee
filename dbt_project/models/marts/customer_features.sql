-- One row per customer as of the as-of day: the feature catalogue (docs/features.md).
-- A full build computes every customer. An incremental build (the var `features_since`, set by the
-- features asset when this table holds that day and only appends were loaded since) computes the
-- customers in int_customers_affected and keeps the stored features of every other customer; the
-- calendar features and the RFM scores (which rank every customer) are computed for all, every day.
{%- set since = features_since() %}

with customers as (
    select * from {{ ref('int_customers_registered') }} where {{ in_scope('customer_id') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
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
),

{#- `computed` (the customers recomputed) is kept once; `features` (every customer, 55 columns) is read twice, by the
    RFM ranks and the final select, and inlined into both rather than kept whole: the RFM then reads 4 columns of
    the stored rows. Kept whole, at 10M customers it held ~4.4 GB, spilled past an 8 GB memory limit, and the model
    took 81-110 s instead of 64-70 s (docs/benchmarks.md). #}
computed as {{ cte_hint('materialized') }} (
    select
        customers.customer_id,
        customers.first_name,
        customers.last_name,
        customers.gender,
        customers.birth_date,
        customers.email,
        customers.phone_e164 as phone,
        customers.phone_region,
        customers.phone_timezone as timezone,
        customers.city,
        customers.region,
        customers.country,
        customers.registered_at,
        customers.tags,
        customers.consent_email,
        customers.consent_sms,
        customers.consent_push,
        cast(coalesce(orders.orders_count, 0) as integer) as orders_count,
        cast(coalesce(orders.total_amount, 0) as decimal(18, 2)) as total_amount,
        {{ rounded_ratio('cast(orders.total_amount * 100 as bigint)', 'nullif(orders.orders_count, 0)') }} as avg_order_value,
        orders.first_order_date,
        orders.last_order_date,
        cast(coalesce(orders.cancelled_count, 0) as integer) as cancelled_count,
        cast(coalesce(orders.returned_count, 0) as integer) as returned_count,
        cast(coalesce(orders.orders_30d, 0) as integer) as orders_30d,
        cast(coalesce(orders.amount_30d, 0) as decimal(18, 2)) as amount_30d,
        cast(coalesce(orders.orders_365d, 0) as integer) as orders_365d,
        cast(coalesce(orders.amount_365d, 0) as decimal(18, 2)) as amount_365d,
        favourites.favourite_category,
        favourites.favourite_brand,
        favourites.favourite_store,
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
    left join favourites on favourites.customer_id = customers.customer_id
    left join bonus on bonus.customer_id = customers.customer_id
    left join messages on messages.customer_id = customers.customer_id
    left join events on events.customer_id = customers.customer_id
),

{#- the stored columns after the RFM scores, in the table's order -#}
{%- set tail = ['bonus_balance', 'bonus_earned_365d', 'emails_sent_30d', 'emails_opened_30d',
    'emails_clicked_30d', 'emails_sent_90d', 'emails_opened_90d', 'emails_clicked_90d', 'messages_sent_30d',
    'last_email_open_at', 'last_email_click_at', 'unsubscribed_email', 'unsubscribed_sms', 'unsubscribed_push',
    'unsubscribed', 'complained', 'last_visit_at', 'visits_30d', 'product_views_30d', 'cart_adds_30d',
    'last_event_at'] + custom_column_names(ref('stg_crm__customers')) %}
{%- set head = ['first_name', 'last_name', 'gender', 'birth_date', 'email', 'phone', 'phone_region',
    'timezone', 'city', 'region', 'country', 'registered_at', 'tags', 'consent_email', 'consent_sms',
    'consent_push', 'orders_count', 'total_amount', 'avg_order_value', 'first_order_date', 'last_order_date',
    'cancelled_count', 'returned_count', 'orders_30d', 'amount_30d', 'orders_365d', 'amount_365d',
    'favourite_category', 'favourite_brand', 'favourite_store'] %}

features as {{ cte_hint('not materialized') }} (
    select * from computed
    {%- if since is not none %}
    union all
    select customer_id, {{ (head + tail) | join(', ') }}
    from {{ this }}
    where customer_id not in (select customer_id from {{ ref('int_customers_affected') }})
    {%- endif %}
),

rfm as (
    {{ rfm_scores('features') }}
)

select
    features.customer_id,
    {{ as_of() }} as as_of,
    {%- for col in head %}
    features.{{ col }},
    {%- if col == 'birth_date' %}
    {{ age_on('features.birth_date', as_of()) }} as age,
    {%- elif col == 'registered_at' %}
    {{ tenure_days_on('features.registered_at', as_of()) }} as tenure_days,
    {%- elif col == 'last_order_date' %}
    {{ recency_days_on('features.last_order_date', as_of()) }} as recency_days,
    {%- endif %}
    {%- endfor %}
    rfm.rfm_r,
    rfm.rfm_f,
    rfm.rfm_m,
    rfm.rfm_score,
    coalesce(rfm.rfm_segment, 'no_purchases') as rfm_segment
    {%- for col in tail %},
    features.{{ col }}
    {%- endfor %}
from features
left join rfm on rfm.customer_id = features.customer_id
