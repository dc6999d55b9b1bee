select
    customer_id,
    first_name,
    last_name,
    gender,
    birth_date,
    email,
    phone_e164,
    phone_region,
    phone_timezone,
    phone_carrier,
    city,
    region,
    country,
    registered_at,
    tags,
    consent_email,
    consent_sms,
    consent_push
    {{ custom_columns(source('raw', 'customers'), 'customers') }}
from {{ source('raw', 'customers') }} as customers
