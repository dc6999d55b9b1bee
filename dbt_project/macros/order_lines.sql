{# The stored order lines (models/intermediate/int_order_lines_all.sql; features/lines.py decides and records). #}

{# A line's amount: its quantity times its unit price, a decimal of two places. #}
{% macro line_amount(quantity, price) -%}
    cast({{ quantity }} * {{ price }} as decimal(38, 2))
{%- endmacro %}

{# The rows of raw.order_lines the stored table already holds, when the run says so (var `lines_rows`): a
   build then adds the lines from that rowid on. None: a full build. #}
{% macro order_lines_rows() -%}
    {%- set rows = run_var('lines_rows') -%}
    {{ return(none if rows is none else rows | int) }}
{%- endmacro %}

{# The pre-hook of int_order_lines_all: a full build empties the stored table, then adds every line. #}
{% macro order_lines_full_rebuild() -%}
    {%- if is_incremental() and order_lines_rows() is none -%}
        delete from {{ this }}
    {%- endif -%}
{%- endmacro %}
