{# The tests on raw rows (the staging views, and the fact marts that only pass them on) look, in an
   incremental build, only at the rows whose key arrived in the raw table since the stored build: a test
   configured `where: "loaded_after:<raw table>.<key column>"` reads the rows whose key is among those
   appended rows' keys (old rows with the same key included, so a new key that repeats an old one is
   still found). Every other row was tested by the stored build, which passed (a build whose test fails is
   not recorded), and a full reload of any input makes the build a full one, which tests every row.

   A fact mart is cut at the as-of day, so a row loaded before the stored build but dated after its day
   entered the fact only now, unread by the stored build's tests: a fact's test adds ` passed:<time column>`,
   `where: "loaded_after:orders.order_id passed:ordered_at"`, which also reads the rows whose time passed
   the cutoff since the stored build's day (a backfill's next day, rows loaded ahead of their day). The
   lookup column must be non-null on the rows it should find (a null is in no list): a `not_null` test
   looks its rows up by another column, e.g. the fact's time (never null there: the cut drops null times).

   Overrides dbt's get_where_subquery, which applies a test's `where` (dbt's documented way to template it);
   any other `where` works as in dbt. #}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where and where.startswith('loaded_after:') -%}
        {%- set lookup, _, passed = where[('loaded_after:' | length):].partition(' passed:') -%}
        {%- set table, column = lookup.split('.') -%}
        {%- set since = features_since() -%}
        {%- if since is none -%}
            {%- set where = none -%}
        {%- else -%}
            {%- set where -%}
                ({{ column }} in (select {{ column }} from {{ source('raw', table) }} where {{ loaded_after(table) }})
                {%- if passed %} or {{ passed }} >= {{ cutoff(since) }}{% endif %})
            {%- endset -%}
        {%- endif -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
