<?php
/**
 * The plugin's settings: the app's address, the shop's id there and the shared secret.
 *
 * They are filled in three ways: by hand on WooCommerce → Stammkunde; by the app itself right
 * after the store connected through wc-auth (the app writes them with the API key the store
 * just granted it, through WooCommerce's REST settings endpoint
 * `PUT /wp-json/wc/v3/settings/stammkunde/batch`, which this class registers); or again by the
 * app after `flask shops plugin-secret --shop S --rotate`.
 *
 * @package Stammkunde
 */

defined( 'ABSPATH' ) || exit;

/**
 * Options, the settings page and the REST settings group.
 */
class Stammkunde_Settings {

	const GROUP          = 'stammkunde';
	const OPTION_APP_URL = 'stammkunde_app_url';
	const OPTION_SHOP_ID = 'stammkunde_shop_id';
	const OPTION_SECRET  = 'stammkunde_secret';
	const PAGE           = 'stammkunde';

	/**
	 * Hook the settings page and the REST settings group.
	 */
	public function register() {
		add_action( 'admin_menu', array( $this, 'add_page' ) );
		add_action( 'admin_init', array( $this, 'register_settings' ) );
		add_filter( 'woocommerce_settings_groups', array( $this, 'rest_groups' ) );
		add_filter( 'woocommerce_settings-' . self::GROUP, array( $this, 'rest_settings' ) );
	}

	/**
	 * The app's base URL without a trailing slash ("" when unset).
	 *
	 * @return string
	 */
	public static function app_url() {
		return rtrim( trim( (string) get_option( self::OPTION_APP_URL, '' ) ), '/' );
	}

	/**
	 * The shop's id in the app ("" when unset).
	 *
	 * @return string
	 */
	public static function shop_id() {
		return trim( (string) get_option( self::OPTION_SHOP_ID, '' ) );
	}

	/**
	 * The shared secret ("" when unset).
	 *
	 * @return string
	 */
	public static function secret() {
		return trim( (string) get_option( self::OPTION_SECRET, '' ) );
	}

	/**
	 * Whether all three settings are present and the URL is usable.
	 *
	 * @return bool
	 */
	public static function is_configured() {
		return '' !== self::secret() && self::valid_shop_id( self::shop_id() ) && self::valid_app_url( self::app_url() );
	}

	/**
	 * A shop id is a positive integer.
	 *
	 * @param string $value Candidate.
	 * @return bool
	 */
	public static function valid_shop_id( $value ) {
		return 1 === preg_match( '/^[1-9][0-9]{0,18}$/', (string) $value );
	}

	/**
	 * The app must be reached over https (http only on loopback, for development).
	 *
	 * @param string $value Candidate URL.
	 * @return bool
	 */
	public static function valid_app_url( $value ) {
		$parts = wp_parse_url( (string) $value );
		if ( ! is_array( $parts ) || empty( $parts['scheme'] ) || empty( $parts['host'] ) ) {
			return false;
		}
		if ( 'https' === $parts['scheme'] ) {
			return true;
		}
		return 'http' === $parts['scheme'] && in_array( $parts['host'], array( '127.0.0.1', 'localhost', '[::1]' ), true );
	}

	/**
	 * WooCommerce → Stammkunde.
	 */
	public function add_page() {
		add_submenu_page(
			'woocommerce',
			__( 'Stammkunde', 'stammkunde' ),
			__( 'Stammkunde', 'stammkunde' ),
			'manage_woocommerce',
			self::PAGE,
			array( $this, 'render_page' )
		);
	}

	/**
	 * The three options, each with its own sanitiser.
	 */
	public function register_settings() {
		register_setting(
			self::GROUP,
			self::OPTION_APP_URL,
			array(
				'type'              => 'string',
				'sanitize_callback' => array( __CLASS__, 'sanitize_app_url' ),
				'default'           => '',
			)
		);
		register_setting(
			self::GROUP,
			self::OPTION_SHOP_ID,
			array(
				'type'              => 'string',
				'sanitize_callback' => array( __CLASS__, 'sanitize_shop_id' ),
				'default'           => '',
			)
		);
		register_setting(
			self::GROUP,
			self::OPTION_SECRET,
			array(
				'type'              => 'string',
				'sanitize_callback' => array( __CLASS__, 'sanitize_secret' ),
				'default'           => '',
			)
		);
	}

	/**
	 * Keep a usable URL; refuse anything else with a message and keep the previous value.
	 *
	 * @param mixed $value Submitted value.
	 * @return string
	 */
	public static function sanitize_app_url( $value ) {
		$url = rtrim( trim( (string) $value ), '/' );
		if ( '' === $url || self::valid_app_url( $url ) ) {
			return $url;
		}
		add_settings_error( self::OPTION_APP_URL, 'invalid', __( 'The app address must start with https://.', 'stammkunde' ) );
		return self::app_url();
	}

	/**
	 * Keep a positive integer; refuse anything else with a message and keep the previous value.
	 *
	 * @param mixed $value Submitted value.
	 * @return string
	 */
	public static function sanitize_shop_id( $value ) {
		$id = trim( (string) $value );
		if ( '' === $id || self::valid_shop_id( $id ) ) {
			return $id;
		}
		add_settings_error( self::OPTION_SHOP_ID, 'invalid', __( 'The shop id is a number.', 'stammkunde' ) );
		return self::shop_id();
	}

	/**
	 * An empty submission keeps the stored secret (the field is never shown filled in).
	 *
	 * @param mixed $value Submitted value.
	 * @return string
	 */
	public static function sanitize_secret( $value ) {
		$secret = trim( (string) $value );
		return '' === $secret ? self::secret() : $secret;
	}

	/**
	 * The settings page: the fields, where the values come from, and the connection's state.
	 */
	public function render_page() {
		if ( ! current_user_can( 'manage_woocommerce' ) ) {
			return;
		}
		$status  = Stammkunde_Plugin::instance()->client()->ping();
		$connect = '' !== self::app_url()
			? add_query_arg( 'store', home_url( '/' ), self::app_url() . '/woocommerce/connect' )
			: '';
		echo '<div class="wrap"><h1>' . esc_html__( 'Stammkunde', 'stammkunde' ) . '</h1>';
		settings_errors();
		echo '<p>' . esc_html__( 'Connect this store with Stammkunde: enter the app address, then connect. The shop id and the secret are filled in automatically once you approve the connection. You can also enter them by hand (the app shows them with "flask shops plugin-secret --shop <store address>").', 'stammkunde' ) . '</p>';
		if ( self::is_configured() && null !== $status ) {
			/* translators: %s: the shop's id in the app */
			echo '<div class="notice notice-success inline"><p>' . esc_html( sprintf( __( 'Connected: the app answers for shop %s.', 'stammkunde' ), self::shop_id() ) ) . '</p></div>';
		} elseif ( self::is_configured() ) {
			echo '<div class="notice notice-error inline"><p>' . esc_html__( 'The app cannot be reached or refuses the secret. Customers see their account without points until this is fixed. The reason is in the PHP error log.', 'stammkunde' ) . '</p></div>';
		} else {
			echo '<div class="notice notice-warning inline"><p>' . esc_html__( 'Not connected yet.', 'stammkunde' ) . '</p></div>';
		}
		echo '<form method="post" action="options.php">';
		settings_fields( self::GROUP );
		echo '<table class="form-table" role="presentation"><tbody>';
		printf(
			'<tr><th scope="row"><label for="%1$s">%2$s</label></th><td><input type="url" class="regular-text" id="%1$s" name="%1$s" value="%3$s" placeholder="https://loyalty.example"></td></tr>',
			esc_attr( self::OPTION_APP_URL ),
			esc_html__( 'App address', 'stammkunde' ),
			esc_attr( self::app_url() )
		);
		printf(
			'<tr><th scope="row"><label for="%1$s">%2$s</label></th><td><input type="text" inputmode="numeric" class="small-text" id="%1$s" name="%1$s" value="%3$s"></td></tr>',
			esc_attr( self::OPTION_SHOP_ID ),
			esc_html__( 'Shop id', 'stammkunde' ),
			esc_attr( self::shop_id() )
		);
		printf(
			'<tr><th scope="row"><label for="%1$s">%2$s</label></th><td><input type="password" class="regular-text" id="%1$s" name="%1$s" value="" autocomplete="off" placeholder="%3$s"></td></tr>',
			esc_attr( self::OPTION_SECRET ),
			esc_html__( 'Shared secret', 'stammkunde' ),
			esc_attr( '' === self::secret() ? '' : __( 'stored (leave empty to keep it)', 'stammkunde' ) )
		);
		echo '</tbody></table>';
		submit_button();
		echo '</form>';
		if ( '' !== $connect ) {
			echo '<p><a class="button button-primary" href="' . esc_url( $connect ) . '">' . esc_html__( 'Connect with Stammkunde', 'stammkunde' ) . '</a></p>';
		}
		echo '</div>';
	}

	/**
	 * Register the "stammkunde" group for WooCommerce's REST settings API.
	 *
	 * @param array $groups Groups so far.
	 * @return array
	 */
	public function rest_groups( $groups ) {
		$groups[] = array(
			'id'          => self::GROUP,
			'label'       => __( 'Stammkunde', 'stammkunde' ),
			'description' => __( 'Connection to the Stammkunde app.', 'stammkunde' ),
		);
		return $groups;
	}

	/**
	 * The group's settings; `option_key` is where WooCommerce reads and writes each.
	 *
	 * @param array $settings Settings so far.
	 * @return array
	 */
	public function rest_settings( $settings ) {
		$settings[] = array(
			'id'         => self::OPTION_APP_URL,
			'option_key' => self::OPTION_APP_URL,
			'label'      => __( 'App address', 'stammkunde' ),
			'type'       => 'text',
			'default'    => '',
		);
		$settings[] = array(
			'id'         => self::OPTION_SHOP_ID,
			'option_key' => self::OPTION_SHOP_ID,
			'label'      => __( 'Shop id', 'stammkunde' ),
			'type'       => 'text',
			'default'    => '',
		);
		$settings[] = array(
			'id'         => self::OPTION_SECRET,
			'option_key' => self::OPTION_SECRET,
			'label'      => __( 'Shared secret', 'stammkunde' ),
			'type'       => 'password',
			'default'    => '',
		);
		return $settings;
	}
}
