{# A run's value: the as-of date, and what an incremental build starts from (features/incremental.py).
   From `--vars` when they name the day (dbt by hand: then every run value comes from them) or the value (a
   unit test's overrides), else from ACRM_DBT_VARS (JSON), which Dagster sets for each build. The variable is
   read only while executing, never while parsing: dbt then parses the same project the same way every day
   and can reuse its last parse (partial parsing), where a `--vars` that changes each day made it parse
   every file again (docs/operations.md, *The last parse*). #}
{% macro run_var(name, default=none) -%}
    {%- set given = var(name, none) -%}
    {%- if given is not none or not execute or var('as_of', none) is not none -%}
        {{ return(given if given is not none else default) }}
    {%- endif -%}
    {{ return(fromjson(env_var('ACRM_DBT_VARS', '{}')).get(name, default)) }}
{%- endmacro %}

{# The as-of date, checked so that a typo fails loudly instead of cutting wrong (a fixed day while parsing,
   which only finds the refs). #}
{% macro as_of() -%}
    {%- set value = run_var('as_of', none if execute else '1970-01-01') -%}
    {%- if value is none -%}
        {{ exceptions.raise_compiler_error("as_of is not set: pass --vars '{as_of: YYYY-MM-DD}' (Dagster sets it in ACRM_DBT_VARS)") }}
    {%- endif -%}
    {%- set value = value | string -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value) -%}
        {{ exceptions.raise_compiler_error("var as_of must be YYYY-MM-DD, got '" ~ value ~ "'") }}
    {%- endif -%}
    cast('{{ value }}' as date)
{%- endmacro %}

{# End of the as-of day (or of `day`, a date expression): rows with a time before this count. #}
{% macro cutoff(day=none) -%}
    {{ dbt.dateadd('day', 1, 'cast(' ~ (day or as_of()) ~ ' as timestamp)') }}
{%- endmacro %}

{# Start of a window of the last n days ending with the as-of day (or with `day`). #}
{% macro window_start(days, day=none) -%}
    {{ dbt.dateadd('day', 1 - days, 'cast(' ~ (day or as_of()) ~ ' as timestamp)') }}
{%- endmacro %}

{# 1 when `ts` lies in the last `days` days up to the cutoff, else 0. #}
{% macro in_window(ts, days) -%}
    case when {{ ts }} >= {{ window_start(days) }} and {{ ts }} < {{ cutoff() }} then 1 else 0 end
{%- endmacro %}

{# The customers' custom_* columns, found in the loaded table at run time (none while parsing). The loader
   admits only names of this pattern (ingest/contract.py CUSTOM_NAME); a name that is not is refused here
   too rather than trusted, and every name is escaped by quote_identifier. #}
{% macro custom_columns(relation, alias) -%}
    {%- for name in custom_column_names(relation) -%}
        , {{ alias }}.{{ name }}
    {%- endfor -%}
{%- endmacro %}

{# The custom_* column names of `relation`, quoted. #}
{% macro custom_column_names(relation) -%}
    {%- set names = [] -%}
    {%- if execute -%}
        {%- for col in adapter.get_columns_in_relation(relation) if col.name.startswith('custom_') -%}
            {%- if not modules.re.fullmatch('custom_[a-z0-9_]{1,57}', col.name) -%}
                {{ exceptions.raise_compiler_error(relation ~ " has a column whose name is not allowed (custom_ then a-z, 0-9, _): reload the landing folder") }}
            {%- endif -%}
            {%- do names.append(quote_identifier(col.name)) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(names) }}
{%- endmacro %}


{# The features that move with the calendar alone. History (customer_features_history) stores what they are
   computed from, and reading a past day (customer_features_on) computes them again for that day. #}
{% macro age_on(birth_date, day) -%}
    cast(
        extract(year from {{ day }}) - extract(year from {{ birth_date }})
        - case
            when extract(month from {{ day }}) * 100 + extract(day from {{ day }})
                < extract(month from {{ birth_date }}) * 100 + extract(day from {{ birth_date }})
            then 1 else 0
        end
    as integer)
{%- endmacro %}

{% macro tenure_days_on(registered_at, day) -%}
    cast({{ dbt.datediff('cast(' ~ registered_at ~ ' as date)', day, 'day') }} as integer)
{%- endmacro %}

{% macro recency_days_on(last_order_date, day) -%}
    cast({{ dbt.datediff(last_order_date, day, 'day') }} as integer)
{%- endmacro %}

{# Column name -> expression for the day-derived features, given the day and the relation alias. #}
{% macro calendar_features(day, alias) -%}
    {{ return({
        'as_of': day,
        'age': age_on(alias ~ '.birth_date', day),
        'tenure_days': tenure_days_on(alias ~ '.registered_at', day),
        'recency_days': recency_days_on(alias ~ '.last_order_date', day),
    }) }}
{%- endmacro %}
