select order_id, product_id, quantity, price, quantity * price as line_amount
from {{ source('raw', 'order_lines') }}
