-- Order lines with product category and brand, cut at the as-of day.
select * from {{ ref('int_order_lines_enriched') }}
