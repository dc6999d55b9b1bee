select order_id, product_id, quantity, price, cast(quantity * price as decimal(38, 2)) as line_amount
from {{ source('raw', 'order_lines') }}
