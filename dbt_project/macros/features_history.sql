{# The days already built, for the history's strategy: it runs before customer_features_dates, so it reads
   the table without a ref (a ref would be a cycle). #}
{% macro features_dates_relation() -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='customer_features_dates')) }}
{%- endmacro %}

{# The RFM scores: stored in the history, and computed for every customer each day (they rank everyone). #}
{% macro rfm_columns() -%}
    {{ return(['rfm_r', 'rfm_f', 'rfm_m', 'rfm_score', 'rfm_segment']) }}
{%- endmacro %}

{# Whether an incremental features build hands the history only the customers that can have changed: when the
   build it started from wrote the history too (the run var `features_history`, features/incremental.py), and
   its day (`features_since`) is the latest day the history holds on or before the as-of day. Every other
   customer's stored row is then the interval covering the as-of day. Otherwise (a day built in between by a
   backfill, a refresh that built the features alone) every customer is compared. #}
{% macro history_partial() -%}
    {%- set since = features_since() -%}
    {%- set dates = features_dates_relation() -%}
    {%- if not execute or since is none or dates is none or run_var('features_history') is not true -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set latest = run_query('select max(as_of) = ' ~ since ~ ' from ' ~ dates ~ ' where as_of <= ' ~ as_of()) -%}
    {{ return(latest.columns[0].values()[0] == true) }}
{%- endmacro %}

{# The history's rows that hold on `day` (a date expression). #}
{% macro covering(day) -%}
    valid_from <= {{ day }} and (valid_to is null or valid_to > {{ day }})
{%- endmacro %}

{# Incremental strategy of customer_features_history. `temp_relation` holds every customer's features on
   day D. Only the customers whose features differ from the interval covering D change:
     1. an old interval that runs past N (the next built day after D) keeps its values from N on;
     2. the old interval covering D ends at D (or goes, when it started at D: D is built again);
     3. the new values hold from D until N (open when D is the latest day).
   Every other day reads what it read before. When `history_partial()`, `temp_relation` holds only the
   customers that can have changed (the model says which): the others are left as they are. #}
{% macro get_incremental_validity_intervals_sql(arg_dict) -%}
    {{ return(adapter.dispatch('validity_intervals_sql', 'acrm')(arg_dict)) }}
{%- endmacro %}

{% macro default__validity_intervals_sql(arg_dict) -%}
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
    {%- set covers = covering(day) -%}
    {%- set some = history_partial() -%}

    create or replace temp table acrm_features_changed as
    select coalesce(new.customer_id, old.customer_id) as customer_id, new.customer_id is not null as present
    from {{ temp }} as new
    {{ 'left' if some else 'full' }} join (select * from {{ target }} where {{ covers }}) as old
        on old.customer_id = new.customer_id
    where new.customer_id is null or old.customer_id is null
        or row({% for v in values %}new.{{ v }}{{ ', ' if not loop.last }}{% endfor %})
            is distinct from row({% for v in values %}old.{{ v }}{{ ', ' if not loop.last }}{% endfor %});

    insert into {{ target }} by name
    select * replace ({{ next_day }} as valid_from)
    from {{ target }}
    where {{ covers }} and {{ next_day }} is not null and (valid_to is null or valid_to > {{ next_day }})
        and customer_id in (select customer_id from acrm_features_changed);

    delete from {{ target }}
    where valid_from = {{ day }} and customer_id in (select customer_id from acrm_features_changed);

    update {{ target }} set valid_to = {{ day }}
    where {{ covers }} and customer_id in (select customer_id from acrm_features_changed);

    insert into {{ target }} by name
    select * replace ({{ day }} as valid_from, {{ next_day }} as valid_to)
    from {{ temp }}
    where customer_id in (select customer_id from acrm_features_changed where present);

    drop table acrm_features_changed
{%- endmacro %}

{# The same on Spark, whose Parquet tables cannot update or delete rows: the new history is written to
   `<history>__next` (a statement of its own), then replaces the history. It rewrites the whole table, so a
   night costs the history's size, not the changes' (Delta or Iceberg would allow a MERGE instead). The four
   parts are the four steps above: rows that stay, the copy from N on, the old interval ended at D, the new
   values from D to N. #}
{% macro spark__validity_intervals_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set day = as_of() -%}
    {%- set dates = features_dates_relation() -%}
    {%- set next_day -%}
        {%- if dates is none -%} cast(null as date)
        {%- else -%} (select min(as_of) from {{ dates }} where as_of > {{ day }})
        {%- endif -%}
    {%- endset -%}
    {%- set temp_columns = adapter.get_columns_in_relation(temp) | map(attribute='name') | list -%}
    {%- set values = [] -%}
    {%- for col in adapter.get_columns_in_relation(target)
        if col.name not in ['customer_id', 'valid_from', 'valid_to'] -%}
        {%- do values.append(quote_identifier(col.name)) -%}
    {%- endfor -%}
    {%- set new_values = [] -%}
    {%- for col in adapter.get_columns_in_relation(target)
        if col.name not in ['customer_id', 'valid_from', 'valid_to'] -%}
        {%- do new_values.append('n.' ~ quote_identifier(col.name) if col.name in temp_columns
            else 'cast(null as ' ~ col.data_type ~ ')') -%}
    {%- endfor -%}
    {%- set covers = covering(day) -%}
    {%- set next = target.incorporate(path={'identifier': target.identifier ~ '__next'}) -%}
    {%- do run_query('drop table if exists ' ~ next) -%}
    {%- call statement('acrm_history_next') -%}
    create table {{ next }} using parquet as
    with changed as (
        select coalesce(n.customer_id, o.customer_id) as customer_id, n.customer_id is not null as present
        from {{ temp }} as n
        full join (select * from {{ target }} where {{ covers }}) as o on o.customer_id = n.customer_id
        where n.customer_id is null or o.customer_id is null
            or not (struct({% for v in new_values %}{{ v }}{{ ', ' if not loop.last }}{% endfor %})
                <=> struct({% for v in values %}o.{{ v }}{{ ', ' if not loop.last }}{% endfor %}))
    ),
    marked as (
        select t.*, c.customer_id is not null as acrm_changed
        from {{ target }} as t left join changed as c on c.customer_id = t.customer_id
    )
    select customer_id, valid_from, valid_to, {{ values | join(', ') }}
    from marked where not (acrm_changed and {{ covers }})
    union all
    select customer_id, {{ next_day }}, valid_to, {{ values | join(', ') }}
    from marked
    where acrm_changed and {{ covers }} and {{ next_day }} is not null
        and (valid_to is null or valid_to > {{ next_day }})
    union all
    select customer_id, valid_from, {{ day }}, {{ values | join(', ') }}
    from marked where acrm_changed and {{ covers }} and valid_from <> {{ day }}
    union all
    select n.customer_id, {{ day }}, {{ next_day }}, {{ new_values | join(', ') }}
    from {{ temp }} as n inner join changed as c on c.customer_id = n.customer_id
    where c.present
    {%- endcall -%}
    insert overwrite table {{ target }}
    select customer_id, valid_from, valid_to, {{ values | join(', ') }} from {{ next }}
{%- endmacro %}

{# dbt-spark accepts its own incremental strategies only (append, insert_overwrite; merge needs Delta or
   Iceberg); the history's, and delete+insert (customer_features_dates, campaign_funnel: a day's rows
   replaced), are added here. A root project's macro takes the place of the adapter's one of that name. #}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) -%}
    {%- if raw_strategy in ['validity_intervals', 'delete+insert'] -%}
        {{ return(raw_strategy) }}
    {%- endif -%}
    {{ return(dbt.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
{%- endmacro %}

{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) -%}
    {%- if strategy == 'validity_intervals' -%}
        {{ return(get_incremental_validity_intervals_sql({'target_relation': target, 'temp_relation': source})) }}
    {%- elif strategy == 'delete+insert' -%}
        {{ return(spark_replace_rows_sql(source, target, unique_key)) }}
    {%- endif -%}
    {{ return(dbt.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key,
        incremental_predicates)) }}
{%- endmacro %}

{# delete+insert on Parquet: the target's rows whose `unique_key` the new rows do not have, plus the new rows,
   written to `<target>__next`, which then replaces the target. #}
{% macro spark_replace_rows_sql(source, target, unique_key) -%}
    {%- set quoted = [] -%}
    {%- for col in adapter.get_columns_in_relation(target) -%}
        {%- do quoted.append(quote_identifier(col.name)) -%}
    {%- endfor -%}
    {%- set columns = quoted | join(', ') -%}
    {%- set next = target.incorporate(path={'identifier': target.identifier ~ '__next'}) -%}
    {%- do run_query('drop table if exists ' ~ next) -%}
    {%- call statement('acrm_replace_next') -%}
    create table {{ next }} using parquet as
    select {{ columns }} from {{ target }}
    where {{ unique_key }} not in (select {{ unique_key }} from {{ source }} where {{ unique_key }} is not null)
    union all
    select {{ columns }} from {{ source }}
    {%- endcall -%}
    insert overwrite table {{ target }} select {{ columns }} from {{ next }}
{%- endmacro %}

{# marts.customer_features_on(day): customer_features as it was on a built day, with the calendar features
   computed for that day. A day between two built days reads the earlier one. #}
{% macro create_features_reader(history=none, features=none) -%}
    {%- if execute and target.type == 'duckdb' -%}
        {%- set history = history or this -%}
        {%- set features = features or ref('customer_features') -%}
        {%- set day = 'cast(as_of_day as date)' -%}
        {%- set calendar = calendar_features(day, 'h') -%}
        create or replace macro {{ history.include(database=false, identifier=false) }}.customer_features_on(as_of_day) as table
        select
        {%- for col in adapter.get_columns_in_relation(features) %}
            {{ calendar.get(col.name, 'h.' ~ quote_identifier(col.name)) }} as {{ quote_identifier(col.name) }}
            {{- ',' if not loop.last }}
        {%- endfor %}
        from {{ history.include(database=false) }} as h
        where h.valid_from <= {{ day }} and (h.valid_to is null or h.valid_to > {{ day }})
    {%- endif -%}
{%- endmacro %}


{# The same reader on a DuckDB file whose features Spark built and the pipeline took back (docs/spark.md):
   `dbt run-operation create_features_reader_on_duckdb`. #}
{% macro create_features_reader_on_duckdb() -%}
    {%- set history = adapter.get_relation(target.database, 'marts', 'customer_features_history') -%}
    {%- set features = adapter.get_relation(target.database, 'marts', 'customer_features') -%}
    {%- if history is none or features is none -%}
        {{ exceptions.raise_compiler_error("marts.customer_features and its history must be in the DuckDB file first") }}
    {%- endif -%}
    {%- do run_query(create_features_reader(history, features)) -%}
    {%- do adapter.commit() -%}  {# run-operation rolls back what it does not commit #}
{%- endmacro %}
