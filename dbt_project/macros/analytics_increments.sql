{# Incremental analytics (acrm_pipelines/analytics/incremental.py decides, docs/analytics.md explains). With the
   run's `analytics_rows` ({raw table: its rows at the recorded analytics build}), a build of an incremental
   analytics model recomputes only the customers with an order or a message loaded since; without it, every
   customer, after emptying the table (analytics_full_rebuild, the models' pre-hook). #}

{% macro analytics_rows() -%}
    {%- set rows = run_var('analytics_rows') -%}
    {{ return(rows if rows else none) }}
{%- endmacro %}

{# A filter on `column` (a customer id): in an incremental build, the customers with a raw order or message
   appended since the recorded build; else true. Raw tables only ever have rows appended between two
   recorded builds (a full reload makes the next build a full one), so rowid marks what is new. #}
{% macro analytics_scope(column) -%}
    {%- set rows = analytics_rows() -%}
    {%- if rows is none or not is_incremental() -%}
        true
    {%- else -%}
        {{ column }} in (
            select customer_id from {{ source('raw', 'orders') }} where rowid >= {{ rows.get('orders', 0) | int }}
            union all
            select customer_id from {{ source('raw', 'messages') }} where rowid >= {{ rows.get('messages', 0) | int }}
        )
    {%- endif -%}
{%- endmacro %}

{# The pre-hook of an incremental analytics model: a full build replaces every row. #}
{% macro analytics_full_rebuild() -%}
    {%- if is_incremental() and analytics_rows() is none -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}
