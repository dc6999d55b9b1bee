{# What differs between the engines, in one place (docs/spark.md). Models call these (or dbt's cross-database
   macros, which dispatch to our versions first: dbt_project.yml `dispatch`), so no model is written twice. #}

{# A quoted identifier with embedded quotes doubled: "x" on DuckDB, `x` on Spark (adapter.quote does not
   escape them). #}
{% macro quote_identifier(name) -%}
    {{ return(adapter.dispatch('quote_identifier', 'acrm')(name)) }}
{%- endmacro %}

{% macro default__quote_identifier(name) -%}
    "{{ name | replace('"', '""') }}"
{%- endmacro %}

{% macro spark__quote_identifier(name) -%}
    `{{ name | replace('`', '``') }}`
{%- endmacro %}

{# a / b for whole numbers (b > 0), rounded half away from zero, as an exact DECIMAL with `scale` digits: e.g. an
   average of money in cents. Both engines compute it in integers, so they give the same value (a DECIMAL
   divided by an INTEGER is a DOUBLE on DuckDB and an exact DECIMAL on Spark, which round 1.005 apart). #}
{% macro rounded_ratio(a, b, scale=2) -%}
    cast(
        cast(
            case when {{ a }} < 0 then -1 else 1 end * {{ int_div('2 * abs(' ~ a ~ ') + ' ~ b, '2 * ' ~ b) }}
        as decimal(18, 0)) * {{ '%.*f' | format(scale, 10 ** -scale) }}
    as decimal(18, {{ scale }}))
{%- endmacro %}

{# Integer division of two non-negative whole numbers. #}
{% macro int_div(a, b) -%}
    {{ return(adapter.dispatch('int_div', 'acrm')(a, b)) }}
{%- endmacro %}

{% macro default__int_div(a, b) -%}
    (({{ a }}) // ({{ b }}))
{%- endmacro %}

{% macro spark__int_div(a, b) -%}
    (({{ a }}) div ({{ b }}))
{%- endmacro %}

{# dbt's spark__dateadd goes through unix seconds and a date; timestampadd keeps the time and its type. #}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    timestampadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
{%- endmacro %}

{# dbt's spark__datediff asserts that its arguments are not null (a customer without orders has none).
   Boundaries crossed, as DuckDB's date_diff counts them: days, months or years. #}
{% macro spark__datediff(first_date, second_date, datepart) -%}
    {%- if datepart == 'day' -%}
        datediff({{ second_date }}, {{ first_date }})
    {%- elif datepart == 'month' -%}
        ((year({{ second_date }}) - year({{ first_date }})) * 12 + month({{ second_date }}) - month({{ first_date }}))
    {%- elif datepart == 'year' -%}
        (year({{ second_date }}) - year({{ first_date }}))
    {%- else -%}
        {{ exceptions.raise_compiler_error("acrm's spark__datediff counts days, months or years, not " ~ datepart) }}
    {%- endif -%}
{%- endmacro %}

{# A column's type as DuckDB spells it (the models' YAML declares DuckDB's names), as `engine` spells it. #}
{% macro engine_type(duckdb_type) -%}
    {{ return(adapter.dispatch('engine_type', 'acrm')(duckdb_type)) }}
{%- endmacro %}

{% macro default__engine_type(duckdb_type) -%}
    {{ return(duckdb_type) }}
{%- endmacro %}

{% macro spark__engine_type(duckdb_type) -%}
    {%- set t = duckdb_type | upper | replace(' ', '') -%}
    {%- set names = {'VARCHAR': 'string', 'INTEGER': 'int', 'BIGINT': 'bigint', 'DOUBLE': 'double', 'DATE': 'date',
        'TIMESTAMP': 'timestamp_ntz', 'BOOLEAN': 'boolean', 'VARCHAR[]': 'array<string>'} -%}
    {{ return(names.get(t, t | lower)) }}
{%- endmacro %}

{# dbt's cast (used by model contracts) with the YAML's DuckDB type names said as Spark says them. #}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ engine_type(type) }})
{%- endmacro %}

{# The time of a build, with its time zone as on DuckDB (TIMESTAMPTZ): under spark.sql.timestampType=TIMESTAMP_NTZ
   Spark's current_timestamp() would have none, a type its Hive metastore cannot keep in a partitioned table. #}
{% macro spark__current_timestamp() -%}
    cast(current_timestamp() as timestamp_ltz)
{%- endmacro %}

{# How DuckDB runs a CTE that several parts of the query read: `materialized` (computed once and kept) or `not
   materialized` (inlined into each reader, which then reads only the columns it needs). Spark takes no hint. #}
{% macro cte_hint(kind) -%}
    {{ return(adapter.dispatch('cte_hint', 'acrm')(kind)) }}
{%- endmacro %}

{% macro default__cte_hint(kind) -%}
{%- endmacro %}

{% macro duckdb__cte_hint(kind) -%}
    {{ kind }}
{%- endmacro %}
