select customer_id, occurred_at, points, reason
from {{ source('raw', 'bonus_transactions') }}
