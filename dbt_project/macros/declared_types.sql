{# A data test on a model: the built relation's columns against the model's YAML, every declared column
   with its `data_type` as DuckDB's information_schema spells it (DECIMAL(18,2), VARCHAR[]; case and spaces
   aside). It reads the catalogue (adapter.get_columns_in_relation), never a row, so it costs the same at
   any scale. A row per difference: a declared column that is missing, that has no data_type or another
   type than the built one, or a built column that is not declared (unless its name starts with
   `allow_prefix`: customer_features' custom_* columns, which the customers file decides at run time). #}
{% test declared_types(model, allow_prefix=none) %}
    {%- set problems = [] -%}
    {%- if execute -%}
        {%- set node = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
            | selectattr('schema', 'equalto', model.schema) | selectattr('alias', 'equalto', model.identifier)
            | first -%}
        {%- set built = {} -%}
        {%- for col in adapter.get_columns_in_relation(model) -%}
            {%- do built.update({col.name: col.dtype}) -%}
        {%- endfor -%}
        {%- for name, col in node.columns.items() -%}
            {%- set declared = engine_type(col.data_type) if col.data_type else '' -%}
            {%- if name not in built -%}
                {%- do problems.append([name, declared, '', 'declared but not built']) -%}
            {%- elif not declared -%}
                {%- do problems.append([name, '', built[name], 'no data_type declared']) -%}
            {%- elif (declared | upper | replace(' ', '')) != (built[name] | upper | replace(' ', '')) -%}
                {%- do problems.append([name, declared, built[name], 'built with another type']) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for name, dtype in built.items() if name not in node.columns -%}
            {%- if not (allow_prefix and name.startswith(allow_prefix)) -%}
                {%- do problems.append([name, '', dtype, 'built but not declared']) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if problems %}
    select * from (values
        {%- for row in problems %}
        ({% for value in row %}'{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %}){{ "," if not loop.last }}
        {%- endfor %}
    ) as problems(column_name, declared_type, built_type, problem)
    {%- else %}
    select '' as column_name, '' as declared_type, '' as built_type, '' as problem where false
    {%- endif %}
{% endtest %}
