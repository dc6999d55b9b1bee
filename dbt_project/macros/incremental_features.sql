{# Incremental features (acrm_pipelines/features/incremental.py decides, docs/features.md explains).
   With the run's `features_since` (macros/as_of.sql run_var: the day marts.customer_features holds), a build
   recomputes only the customers in int_customers_affected and keeps every other customer's stored features;
   without it, every customer is computed. #}

{% macro features_since() -%}
    {%- set value = run_var('features_since') -%}
    {%- if value is none or (value | string) == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error("var features_since must be YYYY-MM-DD, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return("cast('" ~ value ~ "' as date)") }}
{%- endmacro %}

{# A filter on `column` (a customer id): the affected customers in an incremental build, else true. The
   ref is taken in both cases, so that dbt always builds int_customers_affected first. #}
{% macro in_scope(column) -%}
    {%- set affected = ref('int_customers_affected') -%}
    {%- if features_since() is none -%}
        true
    {%- else -%}
        {{ column }} in (select customer_id from {{ affected }})
    {%- endif -%}
{%- endmacro %}

{# True when the time `ts` is read differently as of the as-of day than as of `features_since`: it passed
   the cutoff in between, or the start of one of the `windows` (days) passed it. #}
{% macro moved_between(ts, windows=[]) -%}
    {%- set since = features_since() -%}
    ({{ ts }} >= {{ cutoff(since) }} and {{ ts }} < {{ cutoff() }})
    {%- for days in windows %}
    or ({{ ts }} >= {{ window_start(days, since) }} and {{ ts }} < {{ window_start(days) }})
    {%- endfor -%}
{%- endmacro %}

{# Rows of a raw table loaded after the build of `features_since` (appends only: a full reload of any
   input makes the build a full one). `features_rows` holds each table's row count at that build. #}
{% macro loaded_after(table) -%}
    rowid >= {{ (run_var('features_rows') or {}).get(table, 0) | int }}
{%- endmacro %}
