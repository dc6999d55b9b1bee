{# The days already built, for the history's strategy: it runs before customer_features_dates, so it reads
   the table without a ref (a ref would be a cycle). #}
{% macro features_dates_relation() -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='customer_features_dates')) }}
{%- endmacro %}

{# Incremental strategy of customer_features_history. `temp_relation` holds every customer's features on
   day D. Only the customers whose features differ from the interval covering D change:
     1. an old interval that runs past N (the next built day after D) keeps its values from N on;
     2. the old interval covering D ends at D (or goes, when it started at D: D is built again);
     3. the new values hold from D until N (open when D is the latest day).
   Every other day reads what it read before. #}
{% macro get_incremental_validity_intervals_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set day = as_of() -%}
    {%- set dates = features_dates_relation() -%}
    {%- set next_day -%}
        {%- if dates is none -%} cast(null as date)
        {%- else -%} (select min(as_of) from {{ dates }} where as_of > {{ day }})
        {%- endif -%}
    {%- endset -%}
    {%- set values = [] -%}
    {%- for col in adapter.get_columns_in_relation(temp)
        if col.name not in ['customer_id', 'valid_from', 'valid_to'] -%}
        {%- do values.append(quote_identifier(col.name)) -%}
    {%- endfor -%}
    {%- set covering = 'valid_from <= ' ~ day ~ ' and (valid_to is null or valid_to > ' ~ day ~ ')' -%}

    create or replace temp table acrm_features_changed as
    select coalesce(new.customer_id, old.customer_id) as customer_id, new.customer_id is not null as present
    from {{ temp }} as new
    full join (select * from {{ target }} where {{ covering }}) as old on old.customer_id = new.customer_id
    where new.customer_id is null or old.customer_id is null
        or row({% for v in values %}new.{{ v }}{{ ', ' if not loop.last }}{% endfor %})
            is distinct from row({% for v in values %}old.{{ v }}{{ ', ' if not loop.last }}{% endfor %});

    insert into {{ target }} by name
    select * replace ({{ next_day }} as valid_from)
    from {{ target }}
    where {{ covering }} and {{ next_day }} is not null and (valid_to is null or valid_to > {{ next_day }})
        and customer_id in (select customer_id from acrm_features_changed);

    delete from {{ target }}
    where valid_from = {{ day }} and customer_id in (select customer_id from acrm_features_changed);

    update {{ target }} set valid_to = {{ day }}
    where {{ covering }} and customer_id in (select customer_id from acrm_features_changed);

    insert into {{ target }} by name
    select * replace ({{ day }} as valid_from, {{ next_day }} as valid_to)
    from {{ temp }}
    where customer_id in (select customer_id from acrm_features_changed where present);

    drop table acrm_features_changed
{%- endmacro %}

{# marts.customer_features_on(day): customer_features as it was on a built day, with the calendar features
   computed for that day. A day between two built days reads the earlier one. #}
{% macro create_features_reader() -%}
    {%- if execute -%}
        {%- set day = 'cast(as_of_day as date)' -%}
        {%- set calendar = calendar_features(day, 'h') -%}
        create or replace macro {{ this.include(database=false, identifier=false) }}.customer_features_on(as_of_day) as table
        select
        {%- for col in adapter.get_columns_in_relation(ref('customer_features')) %}
            {{ calendar.get(col.name, 'h.' ~ quote_identifier(col.name)) }} as {{ quote_identifier(col.name) }}
            {{- ',' if not loop.last }}
        {%- endfor %}
        from {{ this.include(database=false) }} as h
        where h.valid_from <= {{ day }} and (h.valid_to is null or h.valid_to > {{ day }})
    {%- endif -%}
{%- endmacro %}
