"""The foundation: where files go (`paths`), the scales (`config`), checksummed atomic files and caches
(`integrity`), devices and threads (`devices`), and the small numerical helpers and conventions shared above.
"""
