<?php
/**
 * Small formatting helpers shared by the account tab, the cart and the checkout.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * Numbers, dates and texts in the visitor's language and the shop's time zone.
 */
class Stammkunde_Format {

	/**
	 * "de" or "en" for the app: the visitor's WordPress locale, German for any de_* locale.
	 *
	 * @return string
	 */
	public static function language() {
		$locale = function_exists( 'determine_locale' ) ? determine_locale() : get_locale();
		return 0 === strpos( (string) $locale, 'de' ) ? 'de' : 'en';
	}

	/**
	 * "1.200 Punkte" / "1,200 points".
	 *
	 * @param int $points Points.
	 * @return string
	 */
	public static function points( $points ) {
		$points = (int) $points;
		/* translators: %s: a number of points */
		return sprintf( _n( '%s point', '%s points', $points, 'stammkunde' ), number_format_i18n( $points ) );
	}

	/**
	 * An ISO 8601 instant from the app shown as a date in the site's time zone ("" if unreadable).
	 *
	 * @param mixed $iso Timestamp with offset, e.g. "2026-12-31T23:00:00+00:00".
	 * @return string
	 */
	public static function date( $iso ) {
		$time = is_string( $iso ) ? strtotime( $iso ) : false;
		if ( false === $time ) {
			return '';
		}
		return wp_date( (string) get_option( 'date_format', 'Y-m-d' ), $time );
	}

	/**
	 * What a point is worth, as the app words it ("1 Punkt = 1 Cent"; "" without one).
	 *
	 * @param mixed $value The view's point_value: array("money" => ..., "text" => ...).
	 * @return string
	 */
	public static function point_value( $value ) {
		return is_array( $value ) && isset( $value['text'] ) ? (string) $value['text'] : '';
	}

	/**
	 * What a code is for: a partner voucher with its reward's name, else its reward's name, else
	 * its purpose (a bounce-back code with its amount when the view gives one).
	 *
	 * @param array $row A code of the member view.
	 * @return string
	 */
	public static function code_label( array $row ) {
		$purpose = (string) ( $row['purpose'] ?? '' );
		if ( 'partner_voucher' === $purpose ) {
			/* translators: %s: the reward's name, e.g. "Kino-Gutschein" */
			return ! empty( $row['reward'] ) ? sprintf( __( 'Partner voucher: %s', 'stammkunde' ), (string) $row['reward'] ) : __( 'Partner voucher', 'stammkunde' );
		}
		if ( ! empty( $row['reward'] ) ) {
			return (string) $row['reward'];
		}
		if ( 'bounce_back' === $purpose && ! empty( $row['amount']['amount'] ) && ! empty( $row['amount']['currency'] ) ) {
			/* translators: %s: an amount of money */
			return sprintf( __( '%s off your next order', 'stammkunde' ), self::money( $row['amount']['amount'], $row['amount']['currency'] ) );
		}
		$labels = array(
			'tier_discount'   => __( 'Member discount of your tier', 'stammkunde' ),
			'tier_shipping'   => __( 'Free shipping of your tier', 'stammkunde' ),
			'second_purchase' => __( 'Thank-you discount', 'stammkunde' ),
			'bounce_back'     => __( 'Discount for your next order', 'stammkunde' ),
			'cart'            => __( 'Discount for your cart', 'stammkunde' ),
			'winback'         => __( 'Welcome-back discount', 'stammkunde' ),
			'referral_step'   => __( 'Your lasting member discount for inviting friends, for you only', 'stammkunde' ),
		);
		return isset( $labels[ $purpose ] ) ? $labels[ $purpose ] : __( 'Discount code', 'stammkunde' );
	}

	/**
	 * A percentage as "10 %" (German) or "10%" (English).
	 *
	 * @param mixed $percent Decimal string or number.
	 * @return string
	 */
	public static function percent( $percent ) {
		$number = rtrim( rtrim( number_format( (float) $percent, 2, '.', '' ), '0' ), '.' );
		$number = 'de' === self::language() ? str_replace( '.', ',', $number ) . ' %' : $number . '%';
		return $number;
	}

	/**
	 * What a friend's code gives: "10 % off", "5,00 € off" or "free shipping".
	 *
	 * @param array $offer The app's referral-code answer (kind, value, currency).
	 * @return string
	 */
	public static function offer( array $offer ) {
		$kind = (string) ( $offer['kind'] ?? '' );
		if ( 'percentage' === $kind ) {
			/* translators: %s: a percentage such as "10 %" */
			return sprintf( __( '%s off', 'stammkunde' ), self::percent( $offer['value'] ?? 0 ) );
		}
		if ( 'fixed_amount' === $kind ) {
			/* translators: %s: an amount of money */
			return sprintf( __( '%s off', 'stammkunde' ), self::money( $offer['value'] ?? 0, $offer['currency'] ?? '' ) );
		}
		return __( 'free shipping', 'stammkunde' );
	}

	/**
	 * A money amount from the app (decimal string) as plain text in the shop's format.
	 *
	 * @param string $amount   Decimal string.
	 * @param string $currency ISO code.
	 * @return string
	 */
	public static function money( $amount, $currency ) {
		if ( function_exists( 'wc_price' ) ) {
			return html_entity_decode( wp_strip_all_tags( wc_price( (float) $amount, array( 'currency' => (string) $currency ) ) ), ENT_QUOTES, 'UTF-8' );
		}
		return number_format_i18n( (float) $amount, 2 ) . ' ' . $currency;
	}

	/**
	 * The member's own referral link: the shop's home page with ?sk_ref=CODE.
	 *
	 * @param string $code The member's referral code.
	 * @return string
	 */
	public static function referral_link( $code ) {
		return add_query_arg( Stammkunde_Cart::REFERRAL_PARAM, rawurlencode( (string) $code ), home_url( '/' ) );
	}
}
