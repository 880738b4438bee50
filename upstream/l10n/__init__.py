"""Words and numbers as the reader reads them: Turkish capitals, money and dates, stored texts."""
