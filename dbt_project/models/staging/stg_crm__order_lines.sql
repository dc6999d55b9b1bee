select order_id, product_id, quantity, price, {{ line_amount('quantity', 'price') }} as line_amount
from {{ source('raw', 'order_lines') }}
