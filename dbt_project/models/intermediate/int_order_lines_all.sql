{#- Every loaded order line with its order and product. On DuckDB a table that each build appends to: lines are
    only ever appended to raw.order_lines, and each already has its order and product when loaded (a line
    whose order or product comes later is quarantined, and is loaded only by a full reload of the lines), so
    the lines from rowid `lines_rows` on are all a build must add. features/lines.py decides and records;
    docs/features.md explains. Without `lines_rows` the build replaces every row. The table is not cut at the
    as-of day (int_order_lines_enriched cuts it), so backfills of any day read it as it is. On Spark, a view. -#}
{#- The lines are read from the raw table for their rowid, and are those of stg_crm__order_lines: depending on it
    keeps the staging view, and its tests, upstream of every reader of the lines. #}
-- depends_on: {{ ref('stg_crm__order_lines') }}
{%- if target.type == 'duckdb' -%}
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='line_row',
          pre_hook="{{ order_lines_full_rebuild() }}") }}
{%- else -%}
{{ config(materialized='view') }}
{%- endif %}
select
    {% if target.type == 'duckdb' %}lines.rowid as line_row,{% endif %}
    lines.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.status,
    orders.store_id,
    orders.channel,
    lines.product_id,
    products.product_name,
    products.category,
    products.brand,
    lines.quantity,
    lines.price,
    {{ line_amount('lines.quantity', 'lines.price') }} as line_amount
from {{ source('raw', 'order_lines') }} as lines
inner join {{ ref('stg_crm__orders') }} as orders on orders.order_id = lines.order_id
left join {{ ref('stg_crm__products') }} as products on products.product_id = lines.product_id
{%- if is_incremental() and order_lines_rows() is not none %}
where lines.rowid >= {{ order_lines_rows() }}
{%- endif %}
