{# A campaign's attribution window in hours: the var `attribution_windows` ({campaign: hours}, from the exports'
   `attribution_window`), else `attribution_default_hours` (ACRM_ATTRIBUTION_WINDOW). Campaign names are checked
   by the export validator (letters, digits and ._:-), and quoted here anyway. #}
{% macro attribution_hours(campaign) -%}
    {%- set windows = var('attribution_windows', {}) -%}
    {%- set default = var('attribution_default_hours', 168) | int -%}
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
