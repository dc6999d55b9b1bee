-- Every built day's features as validity intervals: a row holds one customer's features from valid_from
-- (a built day) until valid_to (the next built day where they differ; null while current). A night adds
-- rows only for the customers whose features changed; a backfilled day splits the intervals around it
-- (macros/features_history.sql). An incremental features build hands over only the customers that can
-- have changed. The calendar features (as_of, age, tenure_days, recency_days) are
-- not stored: marts.customer_features_on(day) computes them for the day read.
{{ config(
    materialized='incremental',
    incremental_strategy='validity_intervals',
    on_schema_change='append_new_columns',
    full_refresh=false,
    post_hook="{{ create_features_reader() }}",
) }}

{%- set calendar = ['as_of', 'age', 'tenure_days', 'recency_days'] -%}
{%- set affected = ref('int_customers_affected') -%}  {#- taken while parsing too, so dbt orders the two #}

select
    features.customer_id,
    {{ as_of() }} as valid_from,
    cast(null as date) as valid_to
    {%- if execute -%}
        {%- for col in adapter.get_columns_in_relation(ref('customer_features'))
            if col.name not in calendar and col.name != 'customer_id' %},
    features.{{ quote_identifier(col.name) }}
        {%- endfor -%}
    {%- endif %}
from {{ ref('customer_features') }} as features
{#- An incremental features build kept every other customer's stored row, which is the interval covering the day
    when the history holds the day it was built from (history_partial): then only the affected customers and
    those whose RFM scores (which rank everyone) moved can differ, and the strategy compares those alone. #}
{%- if is_incremental() and history_partial() %}
left join (
    select customer_id, {{ rfm_columns() | join(', ') }}
    from {{ this }}
    where {{ covering(as_of()) }}
) as stored on stored.customer_id = features.customer_id
where features.customer_id in (select customer_id from {{ affected }})
    or stored.customer_id is null
    or row({% for c in rfm_columns() %}features.{{ c }}{{ ', ' if not loop.last }}{% endfor %})
        is distinct from row({% for c in rfm_columns() %}stored.{{ c }}{{ ', ' if not loop.last }}{% endfor %})
{%- endif %}
