"""Word lists for the demo data: names, places, products, campaigns."""

from __future__ import annotations

FEMALE_NAMES = [
    "Anna",
    "Maria",
    "Elena",
    "Olga",
    "Natalia",
    "Irina",
    "Svetlana",
    "Tatiana",
    "Daria",
    "Polina",
    "Ksenia",
    "Alina",
    "Ekaterina",
    "Yulia",
    "Victoria",
    "Sofia",
]
MALE_NAMES = [
    "Ivan",
    "Alexei",
    "Dmitry",
    "Sergei",
    "Andrei",
    "Mikhail",
    "Nikolai",
    "Pavel",
    "Artem",
    "Maxim",
    "Roman",
    "Egor",
    "Kirill",
    "Oleg",
    "Timur",
    "Yuri",
]
LAST_NAMES = [
    "Ivanov",
    "Smirnov",
    "Kuznetsov",
    "Popov",
    "Vasiliev",
    "Petrov",
    "Sokolov",
    "Mikhailov",
    "Novikov",
    "Fedorov",
    "Morozov",
    "Volkov",
    "Alekseev",
    "Lebedev",
    "Semenov",
    "Egorov",
    "Pavlov",
    "Kozlov",
]
RU_CITIES = [
    "Moscow",
    "Saint Petersburg",
    "Novosibirsk",
    "Yekaterinburg",
    "Kazan",
    "Nizhny Novgorod",
    "Samara",
    "Krasnodar",
    "Vladivostok",
    "Omsk",
]
RU_REGIONS = [
    "Moscow",
    "Saint Petersburg",
    "Novosibirsk Oblast",
    "Sverdlovsk Oblast",
    "Tatarstan",
    "Nizhny Novgorod Oblast",
    "Samara Oblast",
    "Krasnodar Krai",
    "Primorsky Krai",
    "Omsk Oblast",
]
KZ_CITIES = ["Almaty", "Astana", "Shymkent"]
KZ_REGIONS = ["Almaty", "Astana", "Shymkent"]
RU_MOBILE = ["903", "905", "906", "909", "915", "916", "917", "925", "926", "977", "985", "999"]
KZ_MOBILE = ["701", "702", "705", "707", "747", "777"]
EMAIL_DOMAINS = ["mail.example", "inbox.example", "post.example", "corp.example"]
TAGS = ["vip", "wholesale", "employee", "newsletter", "b2b"]
TAG_SHARES = [0.03, 0.02, 0.01, 0.25, 0.04]
CATEGORIES = ["Chinese tea", "Green tea", "Coffee", "Teaware", "Sweets", "Gifts", "Herbal tea", "Accessories"]
BRANDS = ["Tea Garden", "Mountain Leaf", "Silk Road", "Morning Cup", "Jade Dragon", "Samovar", "Nordic Roast"]
EVENT_TYPES = ["site_visit", "page_view", "product_view", "cart_add", "cart_abandon", "app_open", "push_subscribe"]
EVENT_SHARES = [0.30, 0.25, 0.20, 0.08, 0.04, 0.12, 0.01]
CAMPAIGNS = [f"camp-{year}-{month:02d}" for year in (2024, 2025, 2026) for month in range(1, 13)]


def translit(word: str) -> str:
    """Names are Latin already; e-mail local parts are lower-case ASCII."""
    return word.lower()
