-- Bonus balance and points earned in the last 365 days, as of the as-of day.
select
    customer_id,
    sum(points) as bonus_balance,
    sum(case when points > 0 then points else 0 end * {{ in_window('occurred_at', 365) }}) as bonus_earned_365d
from {{ ref('stg_crm__bonus_transactions') }}
where occurred_at < {{ cutoff() }} and {{ in_scope('customer_id') }}
group by customer_id
