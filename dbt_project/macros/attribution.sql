{# A campaign's attribution window in hours: the run's `attribution_windows` ({campaign: hours}, from the exports'
   `attribution_window`), else `attribution_default_hours` (ACRM_ATTRIBUTION_WINDOW); macros/as_of.sql run_var. Campaign names are checked
   by the export validator (letters, digits and ._:-), and quoted here anyway. #}
{% macro attribution_hours(campaign) -%}
    {%- set windows = run_var('attribution_windows', {}) -%}
    {%- set default = run_var('attribution_default_hours', 168) | int -%}
    {%- if windows -%}
    case {{ campaign }}
        {%- for name, hours in windows.items() %}
        when '{{ name | replace("'", "''") }}' then {{ hours | int }}
        {%- endfor %}
        else {{ default }}
    end
    {%- else -%}
    {{ default }}
    {%- endif -%}
{%- endmacro %}
