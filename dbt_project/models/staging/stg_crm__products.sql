select product_id, name as product_name, category, brand
from {{ source('raw', 'products') }}
