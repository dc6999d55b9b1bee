select order_id, customer_id, ordered_at, total_amount, status, store_id, channel
from {{ source('raw', 'orders') }}
