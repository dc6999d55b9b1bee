{# RFM quintile scores of the customers of `relation` with a completed order, as of the as-of day:
   ceil(5 * k / n), k = scored customers whose value is no better (ties share a score). `relation` holds
   customer_id, last_order_date, orders_count and total_amount, one row per customer that exists. #}
{% macro rfm_scores(relation) -%}
with scored_base as (
    select
        customer_id,
        {{ dbt.datediff('last_order_date', as_of(), 'day') }} as recency_days,
        orders_count,
        total_amount
    from {{ relation }}
    where orders_count > 0
),

ranked as (
    select
        customer_id,
        count(*) over () as n,
        count(*) over (order by recency_days desc) as k_r,
        count(*) over (order by orders_count) as k_f,
        count(*) over (order by total_amount) as k_m
    from scored_base
),

scores as (
    select
        customer_id,
        cast(ceil(cast(5 as double) * k_r / n) as integer) as rfm_r,
        cast(ceil(cast(5 as double) * k_f / n) as integer) as rfm_f,
        cast(ceil(cast(5 as double) * k_m / n) as integer) as rfm_m
    from ranked
)

select
    customer_id,
    rfm_r,
    rfm_f,
    rfm_m,
    cast(rfm_r as {{ dbt.type_string() }}) || cast(rfm_f as {{ dbt.type_string() }}) || cast(rfm_m as {{ dbt.type_string() }}) as rfm_score,
    case
        when rfm_r >= 4 and rfm_f >= 4 then 'champions'
        when rfm_r >= 3 and rfm_f >= 3 then 'loyal'
        when rfm_r >= 4 and rfm_f = 1 then 'new_customers'
        when rfm_r >= 4 then 'promising'
        when rfm_r = 3 then 'need_attention'
        when rfm_r <= 2 and rfm_f >= 3 then 'at_risk'
        when rfm_r = 2 then 'hibernating'
        else 'lost'
    end as rfm_segment
from scores
{%- endmacro %}
