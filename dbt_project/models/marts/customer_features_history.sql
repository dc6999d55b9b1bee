-- Every built day's features as validity intervals: a row holds one customer's features from valid_from
-- (a built day) until valid_to (the next built day where they differ; null while current). A night adds
-- rows only for the customers whose features changed; a backfilled day splits the intervals around it
-- (macros/features_history.sql). The calendar features (as_of, age, tenure_days, recency_days) are
-- not stored: marts.customer_features_on(day) computes them for the day read.
{{ config(
    materialized='incremental',
    incremental_strategy='validity_intervals',
    on_schema_change='append_new_columns',
    full_refresh=false,
    post_hook="{{ create_features_reader() }}",
) }}

{%- set calendar = ['as_of', 'age', 'tenure_days', 'recency_days'] -%}

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
