{# The as-of date from the `as_of` var, checked so that a typo fails loudly instead of cutting wrong. #}
{% macro as_of() -%}
    {%- set value = var('as_of') | string -%}
    {%- if not modules.re.match('^\d{4}-\d{2}-\d{2}$', value) -%}
        {{ exceptions.raise_compiler_error("var as_of must be YYYY-MM-DD, got '" ~ value ~ "'") }}
    {%- endif -%}
    cast('{{ value }}' as date)
{%- endmacro %}

{# End of the as-of day: rows with a time before this count. #}
{% macro cutoff() -%}
    {{ dbt.dateadd('day', 1, 'cast(' ~ as_of() ~ ' as timestamp)') }}
{%- endmacro %}

{# Start of a window of the last n days ending with the as-of day. #}
{% macro window_start(days) -%}
    {{ dbt.dateadd('day', 1 - days, 'cast(' ~ as_of() ~ ' as timestamp)') }}
{%- endmacro %}

{# 1 when `ts` lies in the last `days` days up to the cutoff, else 0. #}
{% macro in_window(ts, days) -%}
    case when {{ ts }} >= {{ window_start(days) }} and {{ ts }} < {{ cutoff() }} then 1 else 0 end
{%- endmacro %}

{# The customers' custom_* columns, found in the loaded table at run time (none while parsing). The loader
   admits only names of this pattern (ingest/contract.py CUSTOM_NAME); a name that is not is refused here
   too rather than trusted, and every name is escaped by quote_identifier. #}
{% macro custom_columns(relation, alias) -%}
    {%- if execute -%}
        {%- for col in adapter.get_columns_in_relation(relation) if col.name.startswith('custom_') -%}
            {%- if not modules.re.fullmatch('custom_[a-z0-9_]{1,57}', col.name) -%}
                {{ exceptions.raise_compiler_error(relation ~ " has a column whose name is not allowed (custom_ then a-z, 0-9, _): reload the landing folder") }}
            {%- endif -%}
            , {{ alias }}.{{ quote_identifier(col.name) }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{# A double-quoted identifier with embedded quotes doubled (adapter.quote does not escape them). #}
{% macro quote_identifier(name) -%}
    "{{ name | replace('"', '""') }}"
{%- endmacro %}
