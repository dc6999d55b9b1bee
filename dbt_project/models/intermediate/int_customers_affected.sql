-- The customers whose features can differ between `features_since` and the as-of day: a row of theirs
-- passed the cutoff or the start of a window the features count over (30, 90, 365 days), or was loaded
-- after that build. Empty in a full build (no `features_since`), which computes every customer.
{{ config(materialized='table') }}

{% if features_since() is none %}
select cast(null as {{ dbt.type_string() }}) as customer_id where false
{% else %}
select distinct customer_id from (
    select customer_id from {{ source('raw', 'customers') }}
    where {{ moved_between('registered_at') }} or {{ loaded_after('customers') }}
    union all
    select customer_id from {{ source('raw', 'orders') }}
    where {{ moved_between('ordered_at', [30, 365]) }} or {{ loaded_after('orders') }}
    union all
    select orders.customer_id
    from {{ source('raw', 'order_lines') }} as lines
    inner join {{ source('raw', 'orders') }} as orders on orders.order_id = lines.order_id
    where lines.{{ loaded_after('order_lines') }}
    union all
    select customer_id from {{ source('raw', 'events') }}
    where {{ moved_between('occurred_at', [30]) }} or {{ loaded_after('events') }}
    union all
    select customer_id from {{ source('raw', 'messages') }}
    where {{ moved_between('sent_at', [30, 90]) }} or {{ moved_between('opened_at', [30, 90]) }}
        or {{ moved_between('clicked_at', [30, 90]) }} or {{ moved_between('complained_at') }}
        or {{ moved_between('unsubscribed_at') }} or {{ loaded_after('messages') }}
    union all
    select customer_id from {{ source('raw', 'bonus_transactions') }}
    where {{ moved_between('occurred_at', [365]) }} or {{ loaded_after('bonus_transactions') }}
) as moved
where customer_id is not null
{% endif %}
