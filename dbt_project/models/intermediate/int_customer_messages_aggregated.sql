-- Messages sent and engagement; opens, clicks, complaints and unsubscribes count by their own time.
with messages as (
    select * from {{ ref('stg_crm__messages') }}
    where (sent_at < {{ cutoff() }} or opened_at < {{ cutoff() }} or clicked_at < {{ cutoff() }}
        or complained_at < {{ cutoff() }} or unsubscribed_at < {{ cutoff() }})
        and {{ in_scope('customer_id') }}
)

select
    customer_id,
    {% for days in [30, 90] %}
    sum(case when channel = 'email' then {{ in_window('sent_at', days) }} else 0 end) as emails_sent_{{ days }}d,
    sum(case when channel = 'email' then {{ in_window('opened_at', days) }} else 0 end) as emails_opened_{{ days }}d,
    sum(case when channel = 'email' then {{ in_window('clicked_at', days) }} else 0 end) as emails_clicked_{{ days }}d,
    {% endfor %}
    sum({{ in_window('sent_at', 30) }}) as messages_sent_30d,
    max(case when channel = 'email' and opened_at < {{ cutoff() }} then opened_at end) as last_email_open_at,
    max(case when channel = 'email' and clicked_at < {{ cutoff() }} then clicked_at end) as last_email_click_at,
    {% for ch in ['email', 'sms', 'push'] %}
    bool_or(channel = '{{ ch }}' and unsubscribed_at < {{ cutoff() }}) as unsubscribed_{{ ch }},
    {% endfor %}
    bool_or(unsubscribed_at < {{ cutoff() }}) as unsubscribed,
    bool_or(complained_at < {{ cutoff() }}) as complained
from messages
group by customer_id
