"""The one error the converter raises for problems a user can fix: settings, input, existing output."""


class ConversionError(Exception):
  """Conversion could not produce a usable output; nothing was written.

  `report` holds the conversion report when the failure came after reading the inputs (--strict, or no
  valid pair at all), so callers can still show every skipped file and its reason.
  """

  def __init__(self, message: str, report: dict | None = None):
    super().__init__(message)
    self.report = report
