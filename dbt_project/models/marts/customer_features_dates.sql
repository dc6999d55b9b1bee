-- The days whose features are in customer_features_history, with how many customers changed that day.
-- Built after the history, so a day is listed only once its intervals are written.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='as_of', full_refresh=false) }}

select
    {{ as_of() }} as as_of,
    count(*) as customers,
    count(*) filter (where valid_from = {{ as_of() }}) as changed,
    {{ dbt.current_timestamp() }} as built_at
from {{ ref('customer_features_history') }}
where {{ covering(as_of()) }}
