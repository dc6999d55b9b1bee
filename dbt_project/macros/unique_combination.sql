{# The columns together identify a row (dbt has `unique` for one column only; dbt_utils is not installed). #}
{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as rows
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
