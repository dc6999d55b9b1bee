-- Orders placed by the end of the as-of day (every status), for the segment engine's windows.
select order_id, customer_id, ordered_at, total_amount, status, store_id, channel
from {{ ref('int_orders_cut') }}
